"""User function classes. Plain callables work wherever a function class does."""

from .async_function import AsyncFlatMapFunction, AsyncMapFunction
from .base_function import BaseFunction
from .files import FileSink, FileSource
from .multi_input_function import CoMapFunction, JoinFunction
from .source_function import BatchFunction, SourceFunction
from .transform_function import (
    FilterFunction,
    FlatMapFunction,
    KeyByFunction,
    MapFunction,
    PrintSink,
    SinkFunction,
)

__all__ = [
    "AsyncFlatMapFunction",
    "AsyncMapFunction",
    "BaseFunction",
    "BatchFunction",
    "CoMapFunction",
    "FileSink",
    "FileSource",
    "FilterFunction",
    "FlatMapFunction",
    "JoinFunction",
    "KeyByFunction",
    "MapFunction",
    "PrintSink",
    "SinkFunction",
    "SourceFunction",
]
