"""Making messages: render templates, compose, build MIME, notices, unsubscribe links."""
