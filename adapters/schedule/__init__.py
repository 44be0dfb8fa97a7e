"""The schedule adapter: cron expressions and intervals that put an envelope on the bus."""
