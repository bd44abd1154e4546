"""rolebroker's domain: everything here is plain Python with no chalice import."""
