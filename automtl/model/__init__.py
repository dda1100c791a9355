"""Model assembly: input encoders -> sharing scheme (trunk) -> task heads."""
