// Preloaded with `node -r` into dynalite and kinesalite. Both rethrow a
// request's 'error' event (index.js: req.on('error', function (err) { throw
// err })), so a client that aborts a request mid-flight, as a cancelled Go
// context does, kills the whole emulator. A client hanging up is normal:
// log it and keep serving. Any other uncaught error still ends the process.
process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) {
    console.error('client aborted a request:', err.message);
    return;
  }
  console.error(err);
  process.exit(1);
});
