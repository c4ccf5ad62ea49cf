// Zigral desktop viewer: connects noVNC's RFB client to `zigral proxy`.
//
// URL parameters (all optional):
//   token=…     signed desktop token (sent to the proxy as /websockify?token=…)
//   desktop=N   desktop number the token is for (the proxy refuses a token for another desktop)
//   path=…      WebSocket path on the proxy (default "websockify")
//   host, port  proxy address (default: the page's own host and port)
//   view_only=1 do not send input (the proxy enforces this anyway for `view` tokens)
//   password=…  VNC password, if the VNC server asks for one
import RFB from './novnc/core/rfb.js';

const params = new URLSearchParams(window.location.search);
const statusEl = document.getElementById('status');
const reconnectBtn = document.getElementById('reconnect');
const screenEl = document.getElementById('screen');

function setStatus(state, text) {
  statusEl.dataset.state = state;
  statusEl.textContent = text;
  // Tests and other pages read the state from here.
  window.zigralViewer.state = state;
  window.zigralViewer.detail = text;
}

function wsUrl() {
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
  const host = params.get('host') || window.location.hostname;
  const port = params.get('port') || window.location.port;
  let path = params.get('path') || 'websockify';
  path = path.replace(/^\/+/, '');
  const query = new URLSearchParams();
  if (params.get('token')) query.set('token', params.get('token'));
  if (params.get('desktop')) query.set('desktop', params.get('desktop'));
  const hostPort = port ? `${host.includes(':') ? `[${host}]` : host}:${port}` : host;
  const qs = query.toString();
  return `${scheme}://${hostPort}/${path}${qs ? `?${qs}` : ''}`;
}

window.zigralViewer = { state: 'connecting', detail: '', rfb: null };

function connect() {
  reconnectBtn.hidden = true;
  setStatus('connecting', 'connecting…');
  const options = { shared: true };
  if (params.get('password')) options.credentials = { password: params.get('password') };
  let rfb;
  try {
    rfb = new RFB(screenEl, wsUrl(), options);
  } catch (err) {
    setStatus('error', `cannot connect: ${err.message}`);
    reconnectBtn.hidden = false;
    return;
  }
  window.zigralViewer.rfb = rfb;
  rfb.scaleViewport = true;
  rfb.resizeSession = false;
  rfb.viewOnly = params.get('view_only') === '1';
  rfb.addEventListener('connect', () => setStatus('connected', 'connected'));
  rfb.addEventListener('disconnect', (e) => {
    setStatus(e.detail.clean ? 'disconnected' : 'error',
      e.detail.clean ? 'disconnected' : 'connection lost or refused');
    reconnectBtn.hidden = false;
  });
  rfb.addEventListener('credentialsrequired', () => {
    const password = window.prompt('VNC password');
    if (password !== null) rfb.sendCredentials({ password });
  });
  rfb.addEventListener('securityfailure', (e) =>
    setStatus('error', `security failure: ${e.detail.reason || e.detail.status}`));
  rfb.addEventListener('desktopname', (e) => {
    document.getElementById('title').textContent = e.detail.name || 'Zigral desktop';
  });
}

reconnectBtn.addEventListener('click', connect);
connect();
