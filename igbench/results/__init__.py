"""Result files: schema validation, atomic reading/writing, leaderboards and plots."""
