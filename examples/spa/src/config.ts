// Where the services are: `config.json` beside the page, written by whatever serves it
// (deploy/dev up writes one for the local stack).

export interface Config {
  authUrl: string;
  todoUrl: string;
}

const raw: Config = await (await fetch("./config.json")).json();

/** `{host}` in a URL is this page's own host name: a local stack serves the page as both
 * 127.0.0.1 and localhost (passkeys need a name, not an address), and the services must be
 * on the same site as the page for the refresh cookie. */
const here = (url: string): string => url.replace("{host}", location.hostname);

export const config: Config = { authUrl: here(raw.authUrl), todoUrl: here(raw.todoUrl) };
