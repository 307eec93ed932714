"""Analyses of trained models: the sharing study, error recovery and dynamic evaluation."""
