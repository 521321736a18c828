"""The sage-kernel runtime: graph, contexts, tasks, dispatcher, backends, communication."""
