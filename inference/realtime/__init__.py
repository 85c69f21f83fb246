"""Realtime voice conversion (issue 22): a streaming engine over the offline pipeline's stages.

    from inference.realtime import StreamConfig, StreamEngine, StreamSession

- :mod:`inference.realtime.engine`: :class:`StreamConfig`, :class:`StreamEngine` (ring buffer,
  silence gate, SOLA joins, latency);
- :mod:`inference.realtime.convert`: the model stage (``Svc.get_unit_f0`` + ``Svc.synthesize`` on a
  window) and the f0 continuity across blocks;
- :mod:`inference.realtime.sola`: join search and crossfade;
- :mod:`inference.realtime.session`: :class:`StreamSession` (chunks of any size, any rate);
- :mod:`inference.realtime.filemode`: a file streamed through the engine at real pace or as fast
  as possible, with a report (underruns, compute times, joins);
- :mod:`inference.realtime.devices`: sound cards through ``sounddevice`` (PortAudio).
"""

from inference.realtime.engine import StreamConfig, StreamEngine
from inference.realtime.session import StreamSession

__all__ = ["StreamConfig", "StreamEngine", "StreamSession"]
