"""Just-in-time access: requests, approvals and grants."""
