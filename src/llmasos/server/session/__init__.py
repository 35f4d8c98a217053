"""The console's sign-in routes (`/auth/*`)."""
