// Imported first by the CLI: the mount's file I/O, SQLite and DNS share libuv's thread pool, and one
// slow disk must not hold up every FUSE call behind 4 threads. Set before anything uses the pool.
process.env.UV_THREADPOOL_SIZE ??= '16';
export {};
