"""The dispatcher: sends outbound commands on their channel and reports delivery states."""
