#!/usr/bin/env python3
"""The tiny Django site of the django end-to-end test (tests/tests/django.rs)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
