// Where the services are: `config.json` beside the page, written by whatever serves it
// (deploy/dev up writes one for the local stack).

export interface Config {
  authUrl: string;
  todoUrl: string;
}

export const config: Config = await (await fetch("./config.json")).json();
