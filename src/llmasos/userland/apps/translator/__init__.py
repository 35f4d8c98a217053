"""The built-in translator app (see app.py); a package only so its files ship in the wheel."""
