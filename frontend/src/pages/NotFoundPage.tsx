import { Link } from "react-router";
import { EmptyState } from "../components/ui";

export function NotFoundPage() {
  return (
    <EmptyState title="There is no page here.">
      <Link to="/models" className="text-brand-700 underline dark:text-brand-500">
        Go to your models
      </Link>
    </EmptyState>
  );
}
