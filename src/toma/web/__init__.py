"""HTTP served by toma: the one-click unsubscribe endpoint."""
