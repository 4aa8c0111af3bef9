"""Local test doubles for end-to-end tests: fake LLM provider servers and a small agent program."""
