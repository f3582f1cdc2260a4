"""What leaves the tool as a whole: the meeting pack (report template, figures, tables, manifest)
and the Reproduce snippets."""
