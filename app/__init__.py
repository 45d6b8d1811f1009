"""The dashboard's screen side: figures (viz) and upload/session helpers (dashboard). core imports nothing from here."""
