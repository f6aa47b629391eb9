"""Admin HTTP API of the ML loop (part 2): registry, training, experiments, drift, settings,
evaluation and replay, under /api/admin/ml. Admin-only: every view starts with
``require_admin()`` (403 ``admin_only`` otherwise). Thin: arguments in, one service call,
response out."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from app import conn
from app import fields as tf
from app.auth import require_admin
from plugins.mlloop import modelops
from plugins.mlloop.registry import STATUSES

blp = Blueprint("mlloop_admin", __name__, url_prefix="/api/admin/ml",
                description="ML loop administration: models, experiments, drift, evaluation (admin only).")


class ModelQuery(Schema):
    status = fields.String(validate=validate.OneOf(STATUSES))


class ModelSchema(Schema):
    id = fields.Integer(required=True)
    model_name = fields.String(required=True)
    model_version = fields.Integer(required=True)
    model_type = fields.String(required=True)
    status = fields.String(required=True)
    regime = fields.String(allow_none=True)
    content_id = fields.String(required=True)
    feature_set_version = fields.String(required=True)
    feature_list = fields.List(fields.String(), required=True)
    cat_features = fields.List(fields.String(), required=True)
    hyperparameters = fields.Dict(required=True)
    train_auc = fields.Float(allow_none=True)
    val_auc = fields.Float(allow_none=True)
    train_samples = fields.Integer(allow_none=True)
    val_samples = fields.Integer(allow_none=True)
    data_start = tf.UtcDateTime(allow_none=True)
    data_end = tf.UtcDateTime(allow_none=True)
    label_end = tf.UtcDateTime(allow_none=True)
    parent_model_id = fields.Integer(allow_none=True)
    dataset_hash = fields.String(required=True)
    created_at = tf.UtcDateTime(required=True)
    deployed_at = tf.UtcDateTime(allow_none=True)
    retired_at = tf.UtcDateTime(allow_none=True)
    created_by = fields.Integer(allow_none=True)
    description = fields.String(allow_none=True)


class ModelList(Schema):
    models = fields.List(fields.Nested(ModelSchema), required=True)


@blp.route("/models")
class Models(MethodView):
    @blp.arguments(ModelQuery, location="query")
    @blp.response(200, ModelList)
    def get(self, args):
        """List registered model versions (newest first), optionally by status."""
        require_admin()
        return {"models": modelops.list_models(conn(), status=args.get("status"))}
