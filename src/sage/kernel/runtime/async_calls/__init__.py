"""Async calls of a task instance: the machinery behind `map_async` and `flatmap_async`.

One event loop thread per task instance runs the calls (`loop_thread`); a
`CallPolicy` says how many may be in flight, how long an attempt may take,
how to retry and how fast to go (`policy`, `rate_limit`, `call_runner`);
finished calls are handed back to the task thread, which emits them in input
order or as they complete (`completions`), and which waits for input and for
finished calls at once (`input_gate`). `call_stats` counts what happened.

Nothing here is imported by `import sage.kernel`: asyncio loads when a task
with an async operator starts.
"""
