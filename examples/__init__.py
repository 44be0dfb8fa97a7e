"""The worked integrations, shipped with esb so that ``esb init DIR --example NAME`` can copy
one (each folder is a project: ``config/``, ``routes/``, fake peers and a README)."""
