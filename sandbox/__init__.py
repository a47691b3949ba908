"""Host side of coderun: Docker orchestration of sessions, images and the CLI."""
