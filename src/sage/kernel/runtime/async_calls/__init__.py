"""Async calls of a task instance: the machinery behind `map_async` and `flatmap_async`.

One event loop thread per task instance runs the calls (`loop_thread`); a
`CallPolicy` says how many may be in flight, how long an attempt may take,
how to retry and how fast to go (`policy`, `rate_limit`, `call_runner`);
finished calls are handed back to the task thread, which emits them in input
order or as they complete (`completions`), and which waits for input and for
finished calls at once (`input_gate`). `call_stats` counts what happened;
`cancellation` tells the operator's own cancellation from a call's failure.

`import sage.kernel` imports only `policy` from here, which needs no
asyncio: asyncio loads in a process when a task with an async operator
starts there (the operator registry imports them on first use), or when an
instance makes its first service call (service futures are awaitable).
"""
