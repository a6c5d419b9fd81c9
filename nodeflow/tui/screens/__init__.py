"""Modal screens: help, prompts (rename, save as), choices (connect), the quit guard."""
