// sse-hub browser helper (placeholder; see docs/api.md).
