"""Transformers: envelope → envelope steps, chained per route and per destination."""
