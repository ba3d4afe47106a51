"""The demo HTTP service and the loopback router the ``local`` target runs it behind."""
