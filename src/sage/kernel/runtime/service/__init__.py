"""Services: the request/response protocol, the caller side and the service side."""
