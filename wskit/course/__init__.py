"""The course: teaching helpers, exercises and their checks, the grader, the HTML build, the seed."""
