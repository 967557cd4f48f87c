"""build_router / Router.resolve: configured names, passthrough, not found, config errors."""

from __future__ import annotations

import pytest

from app.config import ConfigError, ModelConfig, ProxyConfig
from app.errors import ModelNotFound
from app.routing import ModelRoute, build_router
from app.upstream import UpstreamEndpoint

SOURCE = "/etc/proxy/config.yaml"
DEFAULT_BASE = "http://127.0.0.1:9000/inference"


def model(name: str, **fields: object) -> ModelConfig:
    return ModelConfig.model_validate(
        {"name": name, "api_base": f"http://{name}.test/gen", **fields}
    )


def test_configured_name_resolves_to_its_route() -> None:
    config = ProxyConfig(
        models=[
            model(
                "llama",
                upstream_model="meta-llama/Llama-2-13b-hf",
                timeout=12,
                headers={"Authorization": "Bearer up"},
                prompt_template="llama2",
            )
        ]
    )

    route = build_router(config, source=SOURCE, api_base=None).resolve("llama")

    assert route.name == "llama"
    assert route.upstream_model == "meta-llama/Llama-2-13b-hf"
    assert endpoint_of(route).url == "http://llama.test/gen"
    assert endpoint_of(route).timeout == 12.0
    assert endpoint_of(route).headers == {
        "content-type": "application/json",
        "Authorization": "Bearer up",
    }
    assert route.config is config.models[0]
    assert route.template.render([{"role": "user", "content": "Hi"}]) == "<s>[INST] Hi [/INST]"
    assert route.counter.exact is False


def test_upstream_model_defaults_to_name() -> None:
    router = build_router(ProxyConfig(models=[model("plain")]), source=SOURCE, api_base=None)

    assert router.resolve("plain").upstream_model == "plain"


def test_routes_keep_config_order() -> None:
    names = ["zeta", "alpha", "mid", "custom/x"]
    router = build_router(
        ProxyConfig(models=[model(name) for name in names]), source=SOURCE, api_base=None
    )

    assert [route.name for route in router.routes] == names


def test_passthrough_route_is_not_listed() -> None:
    router = build_router(ProxyConfig(models=[model("a")]), source=SOURCE, api_base=DEFAULT_BASE)

    assert [route.name for route in router.routes] == ["a"]


@pytest.mark.parametrize(
    ("requested", "upstream"),
    [
        ("custom/meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-13b-hf"),
        ("meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-13b-hf"),
        ("custom/x", "x"),
        ("x", "x"),
        ("custom/custom/x", "custom/x"),
    ],
)
def test_passthrough_to_the_default_upstream(requested: str, upstream: str) -> None:
    router = build_router(ProxyConfig(), source=SOURCE, api_base=DEFAULT_BASE)

    route = router.resolve(requested)

    assert route.name == requested
    assert route.upstream_model == upstream
    assert endpoint_of(route).url == DEFAULT_BASE


def test_client_cannot_choose_the_upstream_url() -> None:
    router = build_router(ProxyConfig(), source=SOURCE, api_base=DEFAULT_BASE)

    route = router.resolve("custom/http://evil.example/steal")

    assert endpoint_of(route).url == DEFAULT_BASE
    assert route.upstream_model == "http://evil.example/steal"


def test_configured_name_wins_over_passthrough() -> None:
    config = ProxyConfig(
        models=[model("custom/special", upstream_model="sp", api_base="https://special.test/g")]
    )
    router = build_router(config, source=SOURCE, api_base=DEFAULT_BASE)

    route = router.resolve("custom/special")

    assert endpoint_of(route).url == "https://special.test/g"
    assert route.upstream_model == "sp"


@pytest.mark.parametrize(
    ("api_base", "requested"),
    [(None, "gpt-4o"), (None, "custom/meta-llama/Llama-2-13b-hf"), (DEFAULT_BASE, "custom/")],
)
def test_unknown_model_is_not_found(api_base: str | None, requested: str) -> None:
    router = build_router(ProxyConfig(models=[model("a")]), source=SOURCE, api_base=api_base)

    with pytest.raises(ModelNotFound) as caught:
        router.resolve(requested)

    error = caught.value
    assert error.status == 404
    assert error.code == "model_not_found"
    assert error.param == "model"
    assert f"'{requested}'" in error.message
    assert error.envelope() == {
        "error": {
            "message": error.message,
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


@pytest.mark.parametrize(
    "template",
    [
        "{% for message in messages %}{{ message['content'] }}",  # unclosed for
        "{{ messages[0]['content'] }",  # unclosed expression
        "{% if %}x{% endif %}",
    ],
)
def test_bad_jinja_template_names_file_model_and_field(template: str) -> None:
    config = ProxyConfig(models=[model("ok"), model("broken", prompt_template=template)])

    with pytest.raises(ConfigError) as caught:
        build_router(config, source=SOURCE, api_base=None)

    assert str(caught.value).startswith(f"{SOURCE}: models[1] (broken).prompt_template: ")


def test_unknown_template_name_names_file_model_and_field() -> None:
    config = ProxyConfig(models=[model("m", prompt_template="llama9")])

    with pytest.raises(ConfigError) as caught:
        build_router(config, source=SOURCE, api_base=None)

    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: models[0] (m).prompt_template: ")
    assert "llama9" in message


def test_unreadable_tokenizer_names_the_field() -> None:
    config = ProxyConfig(models=[model("m", tokenizer="/nonexistent/tokenizer.json")])

    with pytest.raises(ConfigError) as caught:
        build_router(config, source=SOURCE, api_base=None)

    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: models[0] (m).tokenizer: ")
    assert "/nonexistent/tokenizer.json" in message


@pytest.mark.parametrize("api_base", ["localhost:9000", "ftp://h/x", ""])
def test_bad_default_upstream_is_a_config_error(api_base: str) -> None:
    with pytest.raises(ConfigError, match="^PROXY_API_BASE: "):
        build_router(ProxyConfig(), source=SOURCE, api_base=api_base)


def endpoint_of(route: ModelRoute) -> UpstreamEndpoint:
    """The endpoint of a route with one deployment."""
    (deployment,) = route.deployments.members
    return deployment.endpoint
