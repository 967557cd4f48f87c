"""OpenAI's chat and legacy completions APIs: request models (schemas), translation to the
core's Ask (translate), answers, stream events and the door that answers with them."""
