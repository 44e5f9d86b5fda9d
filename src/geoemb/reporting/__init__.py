"""Tables (CSV/Markdown/LaTeX) and plots."""
