"""What the API does to the store: one module per resource, functions of a session and inputs.
Views parse, call one of these, and serialize."""
