"""CoalescingTransport: what one event-loop step writes reaches the socket in one write."""

from __future__ import annotations

import asyncio
from typing import Any

from app.server_protocol import CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """The transport under the wrapper: it records each write it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.aborted = self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 9) if name == "peername" else default


async def next_step() -> None:
    await asyncio.sleep(0)


async def test_writes_of_one_step_go_out_as_one() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"hi")
    assert inner.writes == []
    assert transport.get_write_buffer_size() == 40
    await next_step()
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"]


async def test_writes_of_later_steps_are_not_held_back() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"head")
    await next_step()
    transport.writelines([b"event 1", bytearray(b"event 2")])
    await next_step()
    transport.write(memoryview(b"event 3"))
    await next_step()
    assert inner.writes == [b"head", b"event 1event 2", b"event 3"]


async def test_close_sends_what_is_held_first() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"last answer")
    transport.close()
    assert inner.writes == [b"last answer"]
    assert transport.is_closing()  # the inner transport's own answer
    await next_step()
    assert inner.writes == [b"last answer"]  # the step's flush finds nothing left


async def test_abort_drops_what_is_held() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"never sent")
    transport.abort()
    await next_step()
    assert inner.writes == []
    assert inner.aborted


async def test_nothing_is_written_to_a_closing_transport() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"too late")
    inner.closing = True  # the peer went away during the step
    await next_step()
    assert inner.writes == []


async def test_other_attributes_are_the_transports() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    assert transport.get_extra_info("peername") == ("127.0.0.1", 9)
    assert transport.get_extra_info("sockname", "none") == "none"
