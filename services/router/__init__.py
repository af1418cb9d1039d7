"""The router: decides who receives each alert under the sharing agreements and sends each recipient its own copy."""
