// The dmq web console (SPEC §12): a single-page app served by every metadata node at /ui/.
// Hash routes: #/ (overview), #/topics, #/topics/<name>, #/groups, #/groups/<id>, #/charts.
// Built by scripts/build-console.sh into crates/dmq-metadata/ui/ (embedded in the binary).
import { render, Component } from 'preact';
import { html } from './ui.js';
import { useEffect, useState } from 'preact/hooks';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { Overview } from './overview.js';
import { Topics, TopicDetail } from './topics.js';
import { Groups, GroupDetail } from './groups.js';
import { Charts } from './charts.js';


function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  return { page: parts[0] || 'overview', arg: parts.slice(1).join('/') };
}

/** Shows a render error instead of a blank page. */
class Boundary extends Component {
  constructor() {
    super();
    this.state = { error: null };
  }
  componentDidCatch(error) {
    this.setState({ error });
  }
  render() {
    if (this.state.error) {
      return html`<div class="error" role="alert">
        <strong>The console failed to draw this page:</strong> ${String(this.state.error.message || this.state.error)}
        <div><button onClick=${() => this.setState({ error: null })}>Try again</button></div>
      </div>`;
    }
    return this.props.children;
  }
}

const NAV = [
  ['overview', 'Overview'],
  ['topics', 'Topics'],
  ['groups', 'Consumer groups'],
  ['charts', 'Charts'],
];

function App() {
  const [route, setRoute] = useState(parseRoute());
  useEffect(() => {
    const onHash = () => setRoute(parseRoute());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  let view;
  switch (route.page) {
    case 'overview':
      view = html`<${Overview} />`;
      break;
    case 'topics':
      view = route.arg ? html`<${TopicDetail} name=${route.arg} />` : html`<${Topics} />`;
      break;
    case 'groups':
      view = route.arg ? html`<${GroupDetail} id=${route.arg} />` : html`<${Groups} />`;
      break;
    case 'charts':
      view = html`<${Charts} />`;
      break;
    default:
      view = html`<div class="error" role="alert">No page "${route.page}". <a href="#/">Overview</a></div>`;
  }
  return html`
    <header class="top">
      <a class="brand" href="#/">dmq <span>console</span></a>
      <nav>
        ${NAV.map(([page, label]) => html`<a href="#/${page}" class=${route.page === page ? 'active' : ''}>${label}</a>`)}
      </nav>
      <span class="origin" title="The metadata node serving this console">${location.host}</span>
    </header>
    <main><${Boundary} key=${route.page + '/' + route.arg}>${view}<//></main>`;
}

/** Errors outside rendering (e.g. in a chart callback) show as a banner. */
function banner(message) {
  let el = document.getElementById('global-error');
  if (!el) {
    el = document.createElement('div');
    el.id = 'global-error';
    el.className = 'error banner';
    el.setAttribute('role', 'alert');
    document.body.prepend(el);
  }
  el.textContent = `Console error: ${message}`;
}
addEventListener('error', (e) => banner(e.message));
addEventListener('unhandledrejection', (e) => banner(e.reason && e.reason.message ? e.reason.message : String(e.reason)));

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
