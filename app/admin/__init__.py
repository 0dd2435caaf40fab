"""The admin dashboard: server-rendered pages under /admin that call the API's services."""
