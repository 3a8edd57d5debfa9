// The description's PostList, with only its import path changed (and its
// "Component JSX" filled in). Works on any node with a Post model related to
// a User; `outpost generate typescript` types it fully.
import { useEffect, useState } from 'react';
import { useModelService } from 'outpost-client/react';

type Post = { id: string; title: string; user?: { name?: string | null } | null };

export function PostList() {
  const [posts, setPosts] = useState<Post[]>([]);
  const postService = useModelService('Post');

  useEffect(() => {
    const loadPosts = async () => {
      const data = await postService.findMany({
        include: { user: true },
      });
      setPosts(data as Post[]);
    };

    loadPosts();
  }, []);

  const createPost = async (postData: { title: string }) => {
    const newPost = await postService.create(postData);
    setPosts([...posts, newPost as Post]);
  };

  return (
    <div>
      <ul>
        {posts.map((p) => (
          <li key={p.id}>
            {p.title} {p.user?.name ? `by ${p.user.name}` : ''}
          </li>
        ))}
      </ul>
      <button onClick={() => createPost({ title: `Written at ${new Date().toLocaleTimeString()}` })}>New post</button>
    </div>
  );
}
