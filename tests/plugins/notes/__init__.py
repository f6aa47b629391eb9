"""A small plugin that exercises every hook: notes with versions, events, SSE, a handler."""
