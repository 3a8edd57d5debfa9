// The original description's components on an outpost node. Start the node
// with `OUTPOST_CORS_ORIGINS=http://localhost:3000 outpost serve --port 4000`
// (or set VITE_OUTPOST_URL), then `npm run dev`.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { OutpostProvider } from 'outpost-client/react';
import { MyComponent } from './MyComponent';
import { PostList } from './PostList';

const url = import.meta.env.VITE_OUTPOST_URL ?? 'http://localhost:4000';
const token = import.meta.env.VITE_OUTPOST_TOKEN;

const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <OutpostProvider url={url} token={token}>
        <MyComponent />
        <PostList />
      </OutpostProvider>
    </StrictMode>,
  );
}
