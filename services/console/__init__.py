"""The agent console: sign-in, department queues, customer search, the live unified timeline,
replies, hand-logged interactions and the profile panel, served by the hub's HTTP app."""
