"""Deployment wiring for the production server (Aegra): auth handler, checkpointer factory, start-up checks."""
