"""The daemon: HTTP API, language server, watcher, scheduler. Composes trainer and rag."""
