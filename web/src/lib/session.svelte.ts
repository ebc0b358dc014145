import { get, post, setUnauthorizedHandler, ApiError, type User } from './api';

// Who is signed in: null while unknown, false when nobody.
export const session = $state<{ user: User | null | false }>({ user: null });

setUnauthorizedHandler(() => {
  session.user = false;
});

export async function loadSession(): Promise<void> {
  try {
    session.user = await get<User>('/me', { quiet401: true });
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) session.user = false;
    else throw e;
  }
}

export async function signIn(email: string, password: string): Promise<void> {
  const out = await post<{ user: User }>('/auth/login?cookie=true', { email, password });
  session.user = out.user;
}

export async function signOut(): Promise<void> {
  try {
    await post('/auth/logout');
  } finally {
    session.user = false;
  }
}
