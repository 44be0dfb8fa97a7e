"""The web console served at /console (see docs/console.md)."""
