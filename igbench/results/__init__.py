"""Result files: schema validation, atomic reading/writing, leaderboards and plots."""

#: the folders `igbench leaderboard` reads and writes unless told otherwise
DEFAULT_RESULTS = "leaderboards/results"
DEFAULT_OUT = "leaderboards"
