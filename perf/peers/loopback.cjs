// Preloaded into Portkey's node process by peers.sh (`node --require`): its start-server.js
// takes a port but no host and would listen on every interface. This keeps every listening
// socket the process opens without an explicit host on 127.0.0.1, so the benchmark stays on
// loopback. Nothing else is changed.
'use strict';
const net = require('net');
const HOST = '127.0.0.1';
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const a = args[0];
  if (a !== null && typeof a === 'object') {
    if (a.path === undefined && !a.host) args[0] = { ...a, host: HOST };
  } else if (typeof a === 'number' || (typeof a === 'string' && /^\d+$/.test(a))) {
    if (args[1] === undefined || args[1] === null) args[1] = HOST;
    else if (typeof args[1] !== 'string') args.splice(1, 0, HOST);
  }
  return listen.apply(this, args);
};
