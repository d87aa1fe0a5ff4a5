"""Stream processors, HTTP API, dispatcher, embedded stack and CLI of omnihub."""
