# The native batch sender (contrib/tasker-zmq/native, built by setuptools-rust). send and
# send_events coalesce consecutive events of one topic as tasker_zmq.wire.group does and return
# (events sent, events refused at the high-water mark, messages sent, errno or 0).

from tasker_core import Event

class Sender:
    def __init__(self, path: str, socket: int) -> None: ...
    @property
    def version(self) -> tuple[int, int, int]: ...
    @property
    def path(self) -> str: ...
    def send(
        self,
        topics: list[bytes],
        payloads: list[bytes | None],
        max_events: int,
        max_bytes: int,
    ) -> tuple[int, int, int, int]: ...
    def send_events(
        self,
        events: list[Event],
        payloads: list[bytes | None],
        max_events: int,
        max_bytes: int,
    ) -> tuple[int, int, int, int]: ...
