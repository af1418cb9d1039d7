"""`rctc`: what operators and developers do by hand."""
