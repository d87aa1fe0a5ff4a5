"""Reading customers and their timelines."""
