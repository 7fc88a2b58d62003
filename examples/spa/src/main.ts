// The page: signup, login, the todo list (create, edit with If-Match, done, delete), the
// sessions, logout here and everywhere. Every failure shows the problem's `code` and, for
// validation errors, each field's.

import { type Outcome, type Problem, type Todo, todos, withFreshToken } from "./api";
import * as session from "./session";

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`no #${id}`);
  return el as T;
};

function showProblem(problem: Problem | undefined, status?: number): void {
  if (!problem) {
    $("problem").textContent = status ? `Something went wrong (${status}).` : "";
    return;
  }
  const fields = (problem.errors ?? []).map((e) => `${e.field}: ${e.code} (${e.message})`);
  $("problem").textContent = [`${problem.code}: ${problem.detail}`, ...fields].join("\n");
}

function clearProblem(): void {
  $("problem").textContent = "";
}

/** Show the problem of a failed outcome; true when the call succeeded. A success clears
 * nothing: a user action clears the last problem when it starts. */
function ok<T>(outcome: Outcome<T>): outcome is Outcome<T> & { data: T } {
  if (outcome.response.ok) return true;
  showProblem(outcome.error as Problem | undefined, outcome.response.status);
  return false;
}

/** A user action: the last problem goes when it starts; a network failure is shown. */
function action(run: () => Promise<void>): () => void {
  return () => {
    clearProblem();
    run().catch((err: unknown) => {
      $("problem").textContent = `The service could not be reached (${String(err)}).`;
    });
  };
}

function render(signedIn: boolean): void {
  $("signed-in").hidden = !signedIn;
  $("signed-out").hidden = signedIn;
  if (signedIn) {
    void loadTodos();
    void loadSessions();
  } else {
    $("who").textContent = "";
    $("todos").replaceChildren();
    $("sessions").replaceChildren();
  }
}

async function loadTodos(): Promise<void> {
  const outcome = await withFreshToken(() => todos.GET("/v1/todos", { params: { query: { limit: 100 } } }));
  if (!ok(outcome)) return;
  $("todos").replaceChildren(...outcome.data.items.map(todoItem));
}

function todoItem(todo: Todo): HTMLLIElement {
  const li = document.createElement("li");
  li.dataset.testid = "todo";
  li.classList.toggle("done", todo.done);
  const done = document.createElement("input");
  done.type = "checkbox";
  done.checked = todo.done;
  done.dataset.testid = "todo-done";
  done.onchange = action(() => patch(todo, { done: done.checked }));
  const title = document.createElement("span");
  title.textContent = todo.title;
  title.dataset.testid = "todo-title";
  const edit = button(
    "Edit",
    "todo-edit",
    action(async () => {
      const next = prompt("Title", todo.title);
      if (next !== null) await patch(todo, { title: next });
    }),
  );
  const remove = button("Delete", "todo-delete", action(() => removeTodo(todo)));
  li.append(done, title, edit, remove);
  return li;
}

function button(label: string, testid: string, onclick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.textContent = label;
  b.dataset.testid = testid;
  b.onclick = onclick;
  return b;
}

/** Change a todo, but only from the version shown (If-Match): a change made meanwhile
 * elsewhere is a 412, shown, and the list reloaded. */
async function patch(todo: Todo, body: { title?: string; done?: boolean }): Promise<void> {
  const outcome = await withFreshToken(() =>
    todos.PATCH("/v1/todos/{id}", {
      params: { path: { id: todo.id }, header: { "If-Match": `"${todo.version}"` } },
      body,
    }),
  );
  ok(outcome);
  await loadTodos();
}

async function removeTodo(todo: Todo): Promise<void> {
  const outcome = await withFreshToken(() =>
    todos.DELETE("/v1/todos/{id}", {
      params: { path: { id: todo.id }, header: { "If-Match": `"${todo.version}"` } },
    }),
  );
  ok(outcome);
  await loadTodos();
}

async function loadSessions(): Promise<void> {
  const token = session.accessToken();
  if (!token) return;
  const outcome = await withFreshToken(() =>
    session.auth.GET("/v1/auth/sessions", {
      headers: { authorization: `Bearer ${session.accessToken()}` },
    }),
  );
  if (!ok(outcome)) return;
  $("sessions").replaceChildren(
    ...outcome.data.items.map((s) => {
      const li = document.createElement("li");
      li.dataset.testid = "session";
      li.textContent = `${s.user_agent ?? "unknown device"} · ${s.ip ?? "?"} · since ${s.created_at}${s.current ? " (this device)" : ""}`;
      return li;
    }),
  );
  const me = await session.auth.GET("/v1/users/me", {
    headers: { authorization: `Bearer ${session.accessToken()}` },
  });
  if (me.data) $("who").textContent = me.data.display_name ?? me.data.email;
}

function onSubmit(id: string, run: (form: HTMLFormElement) => Promise<void>): void {
  $<HTMLFormElement>(id).onsubmit = (event) => {
    event.preventDefault();
    action(() => run(event.target as HTMLFormElement))();
  };
}

onSubmit("signup-form", async (form) => {
  const fields = new FormData(form);
  const name = String(fields.get("display_name") ?? "").trim();
  const email = String(fields.get("email"));
  const password = String(fields.get("password"));
  const signup = await session.auth.POST("/v1/auth/signup", {
    body: { email, password, display_name: name === "" ? null : name },
  });
  if (ok(signup)) await login(email, password);
});

onSubmit("login-form", async (form) => {
  const fields = new FormData(form);
  await login(String(fields.get("email")), String(fields.get("password")));
});

async function login(email: string, password: string): Promise<void> {
  const outcome = await session.auth.POST("/v1/auth/login", {
    body: { email, password, refresh_delivery: "cookie" },
  });
  if (ok(outcome)) session.signedIn(outcome.data);
}

onSubmit("todo-form", async (form) => {
  const title = String(new FormData(form).get("title"));
  const outcome = await withFreshToken(() => todos.POST("/v1/todos", { body: { title } }));
  if (ok(outcome)) form.reset();
  await loadTodos();
});

$("reload").onclick = action(loadTodos);
$("logout").onclick = action(async () => showProblem(await session.logout()));
$("logout-all").onclick = action(async () => showProblem(await session.logoutEverywhere()));

session.onChange(render);

// For the browser test: refresh on demand, and see what this tab holds.
declare global {
  interface Window {
    authsvc: { refresh: () => Promise<boolean>; hasToken: () => boolean };
  }
}
window.authsvc = { refresh: session.refresh, hasToken: () => session.accessToken() !== null };

// A session survives a reload through the cookie alone.
render(false);
action(async () => {
  await session.refresh();
})();
